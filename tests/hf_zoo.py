"""Tiny Hugging Face models built from their config objects, for tests marked ``models``.

Each architecture is a factory function in this file (``opt()``, ``bart()``...) that
builds the model from a config written out here with random weights: nothing is
downloaded, and every model analyzes in seconds (2 layers, width 32-64). A factory is an
archlint target as it stands (``archlint check tests/hf_zoo.py:opt``): archlint records
the lines here that built each layer, so a finding inside ``transformers`` can point at
the config argument below that set its limit. :data:`ZOO` maps each name to a
:class:`ZooModel` with its factory and, where archlint cannot infer the input from the
first layer, an ``example_input(seq_len, batch)``.

The configs keep the limits that the architectures are known for, written as keywords
so tests can assert against them: OPT's ``max_position_embeddings=2048`` (a table of
2050 rows with an offset of 2), BART's 1024 (1026 rows), RoBERTa's 514 rows with the
padding offset, GPT-J's 2048-row sin/cos buffer, MPT's ``max_seq_len=2048``. Whisper's
encoder and PatchTST accept one length only (``2 * max_source_positions`` mel frames,
``context_length`` steps); here that length is 40, the length archlint traces at.

Import it with ``pytest.importorskip("hf_zoo")``: it needs the ``[models]`` extra.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import transformers
from torch import nn
from transformers.models.whisper.modeling_whisper import WhisperEncoder

#: architectures of the survey in issue 15 that this transformers does not have
MISSING: tuple[str, ...] = ()


@dataclass(frozen=True)
class ZooModel:
    """One architecture: how to build it, and its input when it cannot be inferred."""

    name: str
    factory: Callable[[], nn.Module]
    example_input: Callable[[int, int], Any] | None = None

    def build(self) -> nn.Module:
        """The model with weights drawn under a fixed seed, in eval mode."""
        torch.manual_seed(0)
        return self.factory().eval()


ZOO: dict[str, ZooModel] = {}


def _register(name: str, example_input: Callable[[int, int], Any] | None = None):
    def register(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        ZOO[name] = ZooModel(name, factory, example_input)
        return factory
    return register


def model(name: str) -> nn.Module:
    return ZOO[name].build()


def _mel(bins: int) -> Callable[[int, int], Any]:
    return lambda n, b: (torch.randn(b, bins, n),)


def _series(channels: int) -> Callable[[int, int], Any]:
    return lambda n, b: (torch.randn(b, n, channels),)


# -- encoders ------------------------------------------------------------------------

@_register("t5")
def t5():
    config = transformers.T5Config(vocab_size=100, d_model=64, d_kv=16, d_ff=128,
                                   num_layers=2, num_heads=4,
                                   relative_attention_num_buckets=32,
                                   relative_attention_max_distance=128)
    return transformers.T5EncoderModel(config)


@_register("bart")
def bart():
    config = transformers.BartConfig(vocab_size=100, d_model=64, encoder_layers=2,
                                     decoder_layers=2, encoder_attention_heads=4,
                                     decoder_attention_heads=4, encoder_ffn_dim=128,
                                     decoder_ffn_dim=128,
                                     max_position_embeddings=1024)
    return transformers.BartModel(config)


@_register("distilbert")
def distilbert():
    config = transformers.DistilBertConfig(vocab_size=100, dim=64, n_layers=2, n_heads=4,
                                           hidden_dim=128,
                                           max_position_embeddings=512)
    return transformers.DistilBertModel(config)


@_register("roberta")
def roberta():
    config = transformers.RobertaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=128,
                                        pad_token_id=1,
                                        max_position_embeddings=514)
    return transformers.RobertaModel(config)


@_register("albert")
def albert():
    config = transformers.AlbertConfig(vocab_size=100, embedding_size=32, hidden_size=64,
                                       num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=128,
                                       max_position_embeddings=512)
    return transformers.AlbertModel(config)


@_register("deberta-v2")
def deberta_v2():
    config = transformers.DebertaV2Config(vocab_size=100, hidden_size=64,
                                          num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=128, relative_attention=True,
                                          position_buckets=32, pos_att_type=["p2c", "c2p"],
                                          position_biased_input=False,
                                          max_position_embeddings=512)
    return transformers.DebertaV2Model(config)


@_register("modernbert")
def modernbert():
    config = transformers.ModernBertConfig(vocab_size=100, hidden_size=64,
                                           num_hidden_layers=3, num_attention_heads=4,
                                           intermediate_size=128,
                                           global_attn_every_n_layers=3,
                                           pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                           cls_token_id=1, sep_token_id=2,
                                           local_attention=16)
    return transformers.ModernBertModel(config)


@_register("bigbird")
def bigbird():
    config = transformers.BigBirdConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=128,
                                        attention_type="block_sparse", block_size=8,
                                        num_random_blocks=2,
                                        max_position_embeddings=4096)
    return transformers.BigBirdModel(config)


@_register("fnet")
def fnet():
    config = transformers.FNetConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                                     intermediate_size=128,
                                     use_tpu_fourier_optimizations=False,
                                     max_position_embeddings=512)
    return transformers.FNetModel(config)


@_register("funnel")
def funnel():
    config = transformers.FunnelConfig(vocab_size=100, block_sizes=[1, 1], d_model=64,
                                       n_head=4, d_head=16, d_inner=128,
                                       num_decoder_layers=1)
    return transformers.FunnelBaseModel(config)


@_register("canine")
def canine():
    config = transformers.CanineConfig(hidden_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, intermediate_size=128,
                                       num_hash_buckets=512, downsampling_rate=4,
                                       max_position_embeddings=2048)
    return transformers.CanineModel(config)


@_register("nystromformer")
def nystromformer():
    config = transformers.NystromformerConfig(vocab_size=100, hidden_size=64,
                                              num_hidden_layers=2, num_attention_heads=4,
                                              intermediate_size=128,
                                              max_position_embeddings=512)
    return transformers.NystromformerModel(config)


@_register("reformer")
def reformer():
    config = transformers.ReformerConfig(vocab_size=100, hidden_size=64,
                                         num_attention_heads=2, attention_head_size=32,
                                         attn_layers=["local", "lsh"],
                                         feed_forward_size=128, local_attn_chunk_length=16,
                                         lsh_attn_chunk_length=16, num_buckets=4,
                                         axial_pos_embds_dim=[32, 32],
                                         axial_pos_shape=[32, 64],
                                         max_position_embeddings=2048)
    return transformers.ReformerModel(config)


# -- decoders ------------------------------------------------------------------------

def _decoder(config_class, **extra):
    return config_class(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=128, **extra)


@_register("gemma2")
def gemma2():
    config = _decoder(transformers.Gemma2Config, num_key_value_heads=2, head_dim=16,
                      sliding_window=16)
    return transformers.Gemma2Model(config)


@_register("gemma3")
def gemma3():
    config = _decoder(transformers.Gemma3TextConfig, num_key_value_heads=2, head_dim=16,
                      sliding_window=16)
    return transformers.Gemma3TextModel(config)


@_register("qwen2")
def qwen2():
    config = _decoder(transformers.Qwen2Config, num_key_value_heads=2)
    return transformers.Qwen2Model(config)


@_register("phi3")
def phi3():
    config = _decoder(transformers.Phi3Config, num_key_value_heads=2, pad_token_id=0)
    return transformers.Phi3Model(config)


@_register("gpt-neox")
def gpt_neox():
    config = _decoder(transformers.GPTNeoXConfig, rotary_pct=0.25)
    return transformers.GPTNeoXModel(config)


@_register("falcon")
def falcon():
    config = transformers.FalconConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, new_decoder_architecture=False,
                                       multi_query=False, parallel_attn=False, bias=True,
                                       alibi=True)
    return transformers.FalconModel(config)


@_register("bloom")
def bloom():
    config = transformers.BloomConfig(vocab_size=100, hidden_size=64, n_layer=2, n_head=4)
    return transformers.BloomModel(config)


@_register("mpt")
def mpt():
    config = transformers.MptConfig(vocab_size=100, d_model=64, n_heads=4, n_layers=2,
                                    expansion_ratio=2,
                                    max_seq_len=2048)
    return transformers.MptModel(config)


@_register("opt")
def opt():
    config = transformers.OPTConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                                    ffn_dim=128, num_attention_heads=4,
                                    word_embed_proj_dim=64,
                                    max_position_embeddings=2048)
    return transformers.OPTModel(config)


@_register("gpt-j")
def gpt_j():
    config = transformers.GPTJConfig(vocab_size=100, n_embd=64, n_layer=2, n_head=4,
                                     rotary_dim=8,
                                     n_positions=2048)
    return transformers.GPTJModel(config)


@_register("codegen")
def codegen():
    config = transformers.CodeGenConfig(vocab_size=100, n_embd=64, n_layer=2, n_head=4,
                                        rotary_dim=8, n_ctx=2048,
                                        n_positions=2048)
    return transformers.CodeGenModel(config)


@_register("rwkv")
def rwkv():
    config = transformers.RwkvConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                     attention_hidden_size=32, intermediate_size=64)
    return transformers.RwkvModel(config)


@_register("mamba2")
def mamba2():
    config = transformers.Mamba2Config(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                       state_size=8, expand=2, head_dim=16, num_heads=4,
                                       n_groups=1, chunk_size=16)
    return transformers.Mamba2Model(config)


@_register("jamba")
def jamba():
    config = transformers.JambaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2,
                                      intermediate_size=128, attn_layer_period=2,
                                      attn_layer_offset=1, expert_layer_period=2,
                                      expert_layer_offset=1, num_experts=2,
                                      mamba_d_state=8, mamba_d_conv=4, mamba_expand=2,
                                      use_mamba_kernels=False)
    return transformers.JambaModel(config)


# -- audio and time series -----------------------------------------------------------

_WHISPER_BINS = 16


@_register("whisper-encoder", example_input=_mel(_WHISPER_BINS))
def whisper_encoder():
    config = transformers.WhisperConfig(d_model=64, encoder_layers=2,
                                        encoder_attention_heads=4, encoder_ffn_dim=128,
                                        num_mel_bins=_WHISPER_BINS,
                                        max_source_positions=20)
    return WhisperEncoder(config)


def _speech(config_class, **extra):
    return config_class(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                        intermediate_size=128, conv_dim=(32, 32), conv_stride=(5, 2),
                        conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                        num_conv_pos_embedding_groups=4, **extra)


@_register("hubert")
def hubert():
    return transformers.HubertModel(_speech(transformers.HubertConfig))


@_register("wav2vec2-conformer")
def wav2vec2_conformer():
    config = _speech(transformers.Wav2Vec2ConformerConfig,
                     position_embeddings_type="relative", conv_depthwise_kernel_size=7)
    return transformers.Wav2Vec2ConformerModel(config)


_PATCHTST_CHANNELS = 3


@_register("patchtst", example_input=_series(_PATCHTST_CHANNELS))
def patchtst():
    config = transformers.PatchTSTConfig(num_input_channels=_PATCHTST_CHANNELS,
                                         patch_length=8, patch_stride=8, d_model=32,
                                         num_hidden_layers=2, num_attention_heads=4,
                                         ffn_dim=64,
                                         context_length=40)
    return transformers.PatchTSTModel(config)

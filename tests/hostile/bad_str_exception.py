"""Raises an exception whose __str__ itself raises."""


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no text for you")


raise Unprintable()

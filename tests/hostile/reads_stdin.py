"""Asks a question with input() at import."""
answer = input("continue? ")

"""The next-word model both sides build: its config, its Keras definition and how text becomes examples.

A device trains it (keyboard/) and the coordinator aggregates it (federated/); both import it from
here, so neither imports the other. It depends only on tokenizer/ for the special ids.
"""

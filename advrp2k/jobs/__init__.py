"""The only layer that knows a job: protocols, the model store, the end-to-end runs and the paper's
tables.
"""

"""Evaluating a model under an attack suite: evaluator, engine, saved state, checks, escalation
(never imports training).
"""

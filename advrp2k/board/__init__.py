"""Leaderboard entries, their schema, ranking, the site, plots and the paper's published numbers:
dicts and DataFrames only.
"""

"""Foundations every layer shares: errors, eps, files, locks, paths, compatibility, processes,
precision, random streams, the batch contract.
"""

"""What a plugin author reads: the registries, declared options, and the attack and defense
contracts.
"""

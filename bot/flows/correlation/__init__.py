"""Correlation of new alert groups with open incidents (bot.core.correlation), and the human
corrections: merge, split, the suggestion buttons and learned links."""

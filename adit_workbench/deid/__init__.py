"""Pseudonymization: PS3.15 Annex E profile as data, keyed pseudonyms, leak scanner."""

"""Trigger adapters: parse the trigger's input, call the core, map errors to retry or record."""

"""Shared code for the Portuguese LLM fine-tuning lab; one module per stage.

Dependency order (no cycles): paths -> secrets -> data -> synthetic -> models -> prompts -> plots -> pipeline.
"""

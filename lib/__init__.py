"""Shared code for the Portuguese LLM fine-tuning lab; one module per stage, imported by the notebooks.

Dependency order (each module imports only those before it; no cycles):
paths, secrets -> data, hub -> mt -> synthetic -> models -> prompts -> evaluate -> translate, train, chat, launch -> plots,
report, pipeline.
"""

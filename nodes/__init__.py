"""The ComfyUI nodes of Wan Stream (thin wrappers; the model code is ``wan_core``).

Modules that import ComfyUI (``comfy_api``, ``comfy``, ``folder_paths``, ``server``) are imported only
by the pack's entry point inside a running ComfyUI; ``payloads`` and ``prompt_schedule`` are plain Python.
"""

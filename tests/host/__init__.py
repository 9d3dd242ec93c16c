"""Host tests: the pack in a real ComfyUI server (a package, so its conftest keeps its own module name)."""

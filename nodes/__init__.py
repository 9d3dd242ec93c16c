"""ComfyUI adapters for the Customize-A-Video engine (``cav_core``).

One module per concept: ``base`` (load a text-to-video base), ``video`` (reference clips),
``train`` (absorber and motion T-LoRA), ``lora`` (load / save / inspect motion LoRAs),
``motion_stack`` (the Motion LoRA Stack: ``stack_rows`` checks its rows, ``presets`` keeps them),
``appearance`` (S-LoRA / textual inversion at inference), ``sample`` (generate a clip).
``values`` holds the immutable objects passed between nodes, ``types`` their socket types,
``paths`` the pure file-name rules, ``folders`` the ComfyUI model-folder glue and ``host`` the
model-management / progress / interrupt glue. Only ``values``, ``paths``, ``stack_rows`` and
``convert`` can be imported without ComfyUI.
"""

"""Each built-in stage's options class, one module per stage (``edgemm.options`` is the seam they are made with).

A folder of their own, below both the stages that read them and the recipe/CLI/API that fill them, so that no
stage imports another stage's module to know its settings.
"""

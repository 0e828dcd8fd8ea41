"""Where the minds' models live and run.

``store`` (the content-addressed model store beside the image), ``engines``
(torch and mlx behind one interface, the int8 format, GGUF conversion),
``minds`` (generation 0, pointing a mind at weights, loading its runtime),
``pool`` (the models a process keeps loaded), ``context`` (prompt assembly
within a token budget), ``budget`` (the memory planner) and ``quant_report``
(what Q8 costs against FP16).
"""

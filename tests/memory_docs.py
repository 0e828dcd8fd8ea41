"""Small documents for the memory tests: every format, headings, code, several topics."""
MARKDOWN = """\
# Sourdough baking

A sourdough starter is a culture of wild yeast and lactic acid bacteria. Feed it flour and
water every day. A lively starter doubles in size within six hours of feeding.

```python
def feed(starter, flour, water):

    return starter + flour + water
```

## Shaping the loaf

Shape the dough gently to keep the gas inside. Proof it in a basket overnight in the fridge.
Bake it in a preheated Dutch oven at a high temperature.
"""

RST = """\
Glacier dynamics
================

Glaciers flow downhill under their own weight. Ice deforms slowly, like a very thick fluid.
Meltwater at the base lets a glacier slide faster in summer. Example::

    velocity = deformation + basal_sliding

Crevasses
---------

Crevasses open where the ice stretches, for example over a steep rise in the bed.
"""

TEXT = """\
The violin has four strings tuned in perfect fifths. Players draw a bow of horsehair across
the strings, or pluck them with a finger, which is called pizzicato.

Vibrato is a small, regular change of pitch that warms the tone. Violinists make it by rocking
the finger that presses the string.
"""

PYTHON = '''\
"""Orbital mechanics helpers."""
import math


def orbital_period(semi_major_axis, mu):
    """Kepler's third law: the period of an orbit around a central body."""
    return 2 * math.pi * math.sqrt(semi_major_axis ** 3 / mu)


def escape_velocity(mu, radius):
    """The speed needed to leave a body's gravity well for good."""
    return math.sqrt(2 * mu / radius)
'''

HTML = """\
<html><head><title>Beekeeping</title><style>body { color: red }</style></head>
<body><h1>Honey bees</h1><p>A colony has one queen, thousands of workers and some drones.
Workers gather nectar and turn it into honey &amp; wax.</p>
<pre>hive.inspect(frames=10)</pre></body></html>
"""

JSON = '{"planet": "Mars", "moons": ["Phobos", "Deimos"], "note": "red dust storms"}\n'

FILES = {"bread.md": MARKDOWN, "glacier.rst": RST, "violin.txt": TEXT, "orbits.py": PYTHON,
         "bees.html": HTML, "mars.json": JSON}


def write(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder

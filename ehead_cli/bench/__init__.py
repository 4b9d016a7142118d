"""``ehead bench``: honest speed figures. ``run`` (what is measured and the JSON result), ``render``
(the rasteriser's timing on a head-sized mesh), ``timing`` (the one timer), ``report`` (the tables)."""

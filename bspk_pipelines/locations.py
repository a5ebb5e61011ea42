"""The code locations of a platform that splits its brands across several: each brand file's
`location:` names one, and `bspk workspace` writes a workspace with an entry per location,

    python_module: {module_name: bspk_pipelines.locations, attribute: <location>, location_name: <location>}

so each code server (and each run it starts) loads only its own brands' definitions. The
module's other names start with `_`, which no location's name may: `<location>` is never one of them.
"""


def __getattr__(location: str):
    """The Definitions of the brands whose file says `location: <location>`, built once."""
    if location.startswith("_"):
        raise AttributeError(location)
    if location not in _built:
        from bspk_pipelines.defs.project import build_definitions
        from bspk_pipelines.model.brand_file import load_brands

        brands = [b for b in load_brands() if b.location == location]
        if not brands:
            raise AttributeError(f"no brand file says `location: {location}`: `bspk workspace` lists the locations")
        _built[location] = build_definitions(brands)
    return _built[location]


_built: dict = {}

"""The code locations of a platform that splits its brands across several: each brand file's
`location:` names one, and `bspk workspace` writes a workspace with an entry per location,

    python_module: {module_name: bspk_pipelines.locations, attribute: <location>, location_name: <location>}

so each code server loads only its own brands' definitions (and a run's process only its
brand's, as `defs.repository` does). The module's other names start with `_`, which no
location's name may: `<location>` is never one of them.
"""


def __getattr__(location: str):
    """The repository of the brands whose file says `location: <location>` (no brand file is read
    until Dagster asks for a definition)."""
    if location.startswith("_"):
        raise AttributeError(location)
    if location not in _built:
        from bspk_pipelines.defs.repository import brands_repository
        from bspk_pipelines.model.brand_file import ConfigError, brand_file_of, load_brands

        def brands():
            found = [b for b in load_brands() if b.location == location]
            if not found:
                raise ConfigError([f"no brand file says `location: {location}`: `bspk workspace` lists the locations"])
            return found

        def of_location(brand_id: str):
            brand = brand_file_of(brand_id)
            return brand if brand is not None and brand.location == location else None

        _built[location] = brands_repository(brands, of_location)
    return _built[location]


_built: dict = {}

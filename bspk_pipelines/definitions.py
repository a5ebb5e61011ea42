"""The one entry point: every brand's definitions from its YAML in $BSPK_MAPPINGS_DIR (default mappings/)."""

from bspk_pipelines.model.brand_file import load_brands
from bspk_pipelines.defs.project import build_definitions

defs = build_definitions(load_brands())

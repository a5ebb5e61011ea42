"""The one entry point: every brand's definitions from its YAML in $BSPK_MAPPINGS_DIR (default
mappings/); a run's process reads only its brand's file (`defs.repository`)."""

from bspk_pipelines.defs.repository import brands_repository
from bspk_pipelines.model.brand_file import brand_file_of, load_brands

defs = brands_repository(load_brands, brand_file_of)

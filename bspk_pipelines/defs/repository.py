"""A code location's repository: every brand's definitions where Dagster needs them all (the code
server: the UI's asset graph, the sensors, the schedules), and only one brand's where a process
runs a job of that brand (every job but Dagster's own `__ASSET_JOB` is a brand's, by its name).

A run's process loads the code location again before it runs anything: at two hundred brands the
whole location took over a minute, and every dropped file waited for it. Its brand alone takes
a fraction of a second, and gives the same job: a brand's jobs are resolved among its own assets
(`project.brand_definitions`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import dagster as dg
# Dagster 1.13 (pinned) lets a repository build its definitions lazily through a RepositoryData of
# its own; `Definitions` has no such hook.
from dagster._core.definitions.repository_definition.repository_data import RepositoryData

from bspk_pipelines.defs.project import build_definitions
from bspk_pipelines.model.brand import Brand

# The name Dagster gives the repository of a `Definitions` (what the UI and GraphQL call it).
REPOSITORY = "__repository__"


def brands_repository(brands: Callable[[], list[Brand]], brand: Callable[[str], Brand | None],
                      resources: dict | None = None) -> dg.RepositoryDefinition:
    """`brands` loads the location's brands, `brand` one of them by id (None if it is not the
    location's); `resources` as `build_definitions` takes them."""
    return dg.RepositoryDefinition(REPOSITORY, repository_data=BrandsRepositoryData(brands, brand, resources))


class BrandsRepositoryData(RepositoryData):
    def __init__(self, brands: Callable[[], list[Brand]], brand: Callable[[str], Brand | None], resources: dict | None):
        self._brands, self._brand, self._resources = brands, brand, resources
        self._by_brand: dict[str, RepositoryData] = {}

    @cached_property
    def _whole(self) -> RepositoryData:
        return _data(build_definitions(self._brands(), self._resources))

    def _of_job(self, job_name: str) -> RepositoryData | None:
        """The repository of the brand whose job `job_name` is: `<brand>__...`, as `names` spells
        every job of a brand; None for a name of no brand of the location."""
        if "_whole" in self.__dict__:  # built already (a code server): its jobs are the same
            return None
        brand_id = job_name.split("__", 1)[0] if "__" in job_name.strip("_") else None
        if brand_id not in self._by_brand:
            brand = self._brand(brand_id) if brand_id else None
            if brand is None:
                return None
            self._by_brand[brand_id] = _data(build_definitions([brand], self._resources))
        data = self._by_brand[brand_id]
        return data if data.has_job(job_name) else None

    def get_job(self, job_name: str) -> dg.JobDefinition:
        data = self._of_job(job_name)
        return (data or self._whole).get_job(job_name)

    def has_job(self, job_name: str) -> bool:
        return self._of_job(job_name) is not None or self._whole.has_job(job_name)

    # Everything else is the whole location's.
    def get_top_level_resources(self):
        return self._whole.get_top_level_resources()

    def get_env_vars_by_top_level_resource(self):
        return self._whole.get_env_vars_by_top_level_resource()

    def get_all_jobs(self):
        return self._whole.get_all_jobs()

    def get_job_names(self):
        return self._whole.get_job_names()

    def get_schedule_names(self):
        return self._whole.get_schedule_names()

    def get_all_schedules(self):
        return self._whole.get_all_schedules()

    def get_schedule(self, schedule_name: str):
        return self._whole.get_schedule(schedule_name)

    def has_schedule(self, schedule_name: str) -> bool:
        return self._whole.has_schedule(schedule_name)

    def get_all_sensors(self):
        return self._whole.get_all_sensors()

    def get_sensor_names(self):
        return self._whole.get_sensor_names()

    def get_sensor(self, sensor_name: str):
        return self._whole.get_sensor(sensor_name)

    def has_sensor(self, sensor_name: str) -> bool:
        return self._whole.has_sensor(sensor_name)

    def get_source_assets_by_key(self):
        return self._whole.get_source_assets_by_key()

    def get_assets_defs_by_key(self):
        return self._whole.get_assets_defs_by_key()

    def get_asset_checks_defs_by_key(self):
        return self._whole.get_asset_checks_defs_by_key()

    def get_component_tree(self):
        return self._whole.get_component_tree()

    def get_asset_job_nodes(self):
        return self._whole.get_asset_job_nodes()

    def load_all_definitions(self):
        return self._whole.load_all_definitions()


def _data(defs: dg.Definitions) -> RepositoryData:
    return defs.get_repository_def()._repository_data  # noqa: SLF001 - see the import above

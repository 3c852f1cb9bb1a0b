"""Hydra's own way for an installed package to add config groups: a SearchPathPlugin (discovered by Hydra
in the ``hydra_plugins`` namespace). With it, ``model=my_clips`` and ``mitigation=unsharp`` work without -cd."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class DriftbenchExampleSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="driftbench-example", path="pkg://driftbench_example.conf")

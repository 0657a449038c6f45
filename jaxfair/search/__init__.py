"""Fused latent search: evosax strategies and the original branching method, many searches
for many targets evaluated in one compiled step (see engine.py)."""

from jaxfair.search.archive import Archive
from jaxfair.search.engine import Engine, SearchState, search_mesh
from jaxfair.search.objective import Objective
from jaxfair.search.spaces import Prior, Space, estimate_prior
from jaxfair.search.strategies import STRATEGIES, build

__all__ = ["STRATEGIES", "Archive", "Engine", "Objective", "Prior", "SearchState", "Space",
           "build", "estimate_prior", "search_mesh"]

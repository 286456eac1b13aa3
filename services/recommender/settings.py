"""The recommender's and the ingestion's settings (the search workers' are in compute.py)."""

from __future__ import annotations

from services.common.config import Setting
from services.recommender.index.graph import DEFAULT_EF_SEARCH
from services.recommender.search.routing import RoutingPolicy

DEFAULTS = RoutingPolicy()

INDEX_DIR = Setting("INDEX_DIR", "var/index", "recommender, ingestion",
                    "index generations (`CURRENT` names the live one)")
INDEX_POLL = Setting("INDEX_POLL_SECONDS", 2.0, "recommender", "how often `CURRENT` is checked for a new generation")
INDEX_SWAP = Setting(
    "INDEX_SWAP", "auto", "recommender",
    "how a new generation replaces the served one: `side_by_side` (load, then swap: no query notices, memory holds "
    "both), `in_place` (drop, then load: new queries get UNAVAILABLE meanwhile, the peak stays near one "
    "generation), `auto` (side by side while both fit `INDEX_SWAP_BUDGET_MB`)")
INDEX_SWAP_BUDGET = Setting("INDEX_SWAP_BUDGET_MB", 2048.0, "recommender",
                            "`auto`: the files of both generations must fit this for a side-by-side swap")
SHARD = Setting("JOB_COMPLETION_INDEX", 0, "ingestion (`--only analyse`)",
                "this shard (Kubernetes sets it in an Indexed Job)")
SHARDS = Setting("JOB_COMPLETIONS", 1, "ingestion (`--only analyse`)", "the shard count")
REDIS_URL = Setting("REDIS_URL", "redis://127.0.0.1:6379/0", "recommender",
                    "response cache; empty or `off` disables it",
                    shown="`redis://127.0.0.1:6379/0` (named in a WARNING when unset)")
CACHE_TTL = Setting("CACHE_TTL_SECONDS", 3600, "recommender", "cache entry lifetime")
CACHE_HMAC_KEY_FILE = Setting("CACHE_HMAC_KEY_FILE", None, "recommender",
                              "key that signs cache values (share it between replicas via a Secret)",
                              shown="unset: a random key per process")
REDIS_PASSWORD_FILE = Setting("REDIS_PASSWORD_FILE", None, "recommender",
                              "Redis AUTH password (a mounted Secret); `rediss://` URLs use TLS")
REDIS_CA_FILE = Setting("REDIS_CA_FILE", None, "recommender", "CA bundle for `rediss://`")
REDIS_TIMEOUT = Setting("REDIS_TIMEOUT_SECONDS", 0.25, "recommender",
                        "connect/read timeout; after a failure Redis is retried every 2 s")
FEATURIZER_ADDR = Setting("FEATURIZER_ADDR", "127.0.0.1:50051", "recommender, ingestion", "featurizer address")
CLASSIFIER_ADDR = Setting("CLASSIFIER_ADDR", "127.0.0.1:50052", "recommender, ingestion", "classifier address")
UPSTREAM_TIMEOUT = Setting("UPSTREAM_TIMEOUT_SECONDS", 30.0, "recommender",
                           "deadline for featurizer/classifier calls (capped by the caller's)")
ROUTING = Setting("ROUTING", DEFAULTS.strategy, "recommender",
                  "how uploads (and classifier-labelled songs) pick genres: `mass`, `runner_up`, `vote` or `all` "
                  "(docs/recommender.md)")
ROUTING_MASS = Setting("ROUTING_MASS", DEFAULTS.mass, "recommender",
                       "`mass`: search genres by calibrated probability until their cumulative probability reaches "
                       "this")
ROUTING_PRIOR_WEIGHT = Setting("ROUTING_PRIOR_WEIGHT", DEFAULTS.prior_weight, "recommender",
                               "hits of routed genres are merged by similarity + this x ln(p_genre / p_top)")
RUNNER_UP_BELOW = Setting("RUNNER_UP_BELOW_SHARE", DEFAULTS.runner_up_below, "recommender",
                          "`runner_up`: a vote share below this also searches the runner-up genre")
EF_SEARCH = Setting("HNSW_EF_SEARCH", DEFAULT_EF_SEARCH, "recommender",
                    "hnswlib `ef` at query time (recall vs speed)")


def routing_policy() -> RoutingPolicy:
    return RoutingPolicy(strategy=ROUTING.as_str(), mass=ROUTING_MASS.as_float(),
                         runner_up_below=RUNNER_UP_BELOW.as_float(), prior_weight=ROUTING_PRIOR_WEIGHT.as_float())

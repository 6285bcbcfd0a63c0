"""facekd: knowledge distillation for lightweight face recognition (insightface MXNet workflow)."""
from .runtime import configure_openmp, quiet_subgraph_log

__version__ = "0.1.0"

configure_openmp()  # before any facekd module imports mxnet: one OpenMP thread per physical core
quiet_subgraph_log()  # no 'Subgraph backend MKLDNN is activated.' on stderr

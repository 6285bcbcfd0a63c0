"""facekd: knowledge distillation for lightweight face recognition (insightface MXNet workflow)."""

__version__ = "0.1.0"

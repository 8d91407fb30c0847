"""Precision passes (fp16, int8 dynamic and static, int4), their accuracy budgets, the accuracy-aware
fallback that keeps the costliest nodes in float, and the CPU features that set quantizer options."""

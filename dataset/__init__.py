"""Data-set tools: preparation of CUB and COCO files, and the synthetic generators the tests and the demo use."""

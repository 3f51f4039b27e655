# Usage rollups and alert rules arrive with the metrics dashboards.

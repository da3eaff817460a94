-- model-serving: tables arrive with the issue that builds this service.
SELECT 1;

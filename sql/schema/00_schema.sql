-- pgjobs' own objects live in schema "pgjobs"; procrastinate's stay in the
-- search_path schema where procrastinate expects them.
CREATE SCHEMA pgjobs;

-- Schemas of the server's own features: `auth` (users and sessions) and `storage` (buckets and
-- objects). Their tables arrive with those features, as later migrations.
CREATE SCHEMA IF NOT EXISTS auth;
CREATE SCHEMA IF NOT EXISTS storage;

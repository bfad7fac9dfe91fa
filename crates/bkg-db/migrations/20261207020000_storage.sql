-- Object storage metadata (/storage/v1). Buckets and objects are rows, so they are queryable
-- over SQL, REST and Flight like any table, and row-level security policies on these two tables
-- decide every storage operation: listing and downloading need SELECT, uploading INSERT
-- (replacing also UPDATE), moving UPDATE, deleting DELETE, creating a bucket INSERT on
-- storage.buckets. Row security is on and no policy exists: until you write some, only roles
-- that bypass row security (service_role, superusers) can use storage. Every role may try (the
-- privileges go to PUBLIC); the policies decide.
CREATE SCHEMA IF NOT EXISTS storage;

CREATE TABLE IF NOT EXISTS storage.buckets (
  id text PRIMARY KEY,
  name text NOT NULL UNIQUE,
  -- The creator's user id: `owner` when it is a UUID, `owner_id` always.
  owner uuid,
  owner_id text,
  -- Public buckets serve reads without a key (writes still need a policy).
  public boolean NOT NULL DEFAULT false,
  -- Largest object, bytes (NULL: the server's limit, BKG_DB_STORAGE_FILE_SIZE_MAX_MB).
  file_size_limit bigint,
  -- Content types accepted (`image/*` wildcards); NULL: any.
  allowed_mime_types text[],
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS storage.objects (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  bucket_id text NOT NULL,
  -- The object's name in its bucket: folders/separated/by/slashes.ext
  name text NOT NULL,
  -- The uploader's user id (auth.uid()): `owner` when it is a UUID, `owner_id` always.
  owner uuid,
  owner_id text,
  -- Where the bytes are: the backend key objects/<version> (a new one per upload).
  version text NOT NULL,
  -- eTag, size, mimetype, cacheControl, lastModified, contentLength, httpStatusCode.
  metadata jsonb,
  -- What the uploader attached (storage-js `metadata`).
  user_metadata jsonb,
  path_tokens text[],
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  last_accessed_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (bucket_id, name)
);

ALTER TABLE storage.buckets ENABLE ROW LEVEL SECURITY;
ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY;
GRANT USAGE ON SCHEMA storage TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON storage.buckets TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON storage.objects TO PUBLIC;

-- Users of the /auth/v1 API, their sessions and refresh tokens. Only the server (as the
-- superuser) reads and writes these tables; no API role holds a privilege on them.
CREATE TABLE IF NOT EXISTS auth.users (
  id uuid PRIMARY KEY,
  email text NOT NULL UNIQUE,
  -- Argon2id PHC string ("!" when password sign-in is impossible).
  encrypted_password text NOT NULL,
  role text NOT NULL,
  aud text NOT NULL,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  email_confirmed_at timestamptz,
  last_sign_in_at timestamptz,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);

-- A sign-in; its refresh tokens form one family, revoked together.
CREATE TABLE IF NOT EXISTS auth.sessions (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL
);

-- Refresh tokens by their SHA-256; each is good once (rotation).
CREATE TABLE IF NOT EXISTS auth.refresh_tokens (
  token_hash text PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES auth.sessions (id) ON DELETE CASCADE,
  user_id uuid NOT NULL,
  revoked boolean NOT NULL,
  created_at timestamptz NOT NULL
);

-- A user banned until this time cannot sign in (the admin API's ban_duration).
ALTER TABLE auth.users ADD COLUMN banned_until timestamptz;

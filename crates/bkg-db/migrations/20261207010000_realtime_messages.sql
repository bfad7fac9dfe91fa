-- Private realtime channels are authorised by row-level security policies on
-- realtime.messages: joining a channel with `private: true` needs a SELECT policy that passes the
-- row {topic, extension} (topic = realtime.topic(), the channel's name; extension = 'broadcast'
-- or 'presence'), and sending on it an INSERT policy whose WITH CHECK passes it. Every role may
-- try (the privileges go to PUBLIC); with row security on and no policy, nobody passes.
CREATE SCHEMA IF NOT EXISTS realtime;
CREATE TABLE IF NOT EXISTS realtime.messages (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  topic text NOT NULL,
  extension text NOT NULL,
  event text,
  payload jsonb,
  private boolean NOT NULL DEFAULT true,
  inserted_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;
GRANT USAGE ON SCHEMA realtime TO PUBLIC;
GRANT SELECT, INSERT ON realtime.messages TO PUBLIC;

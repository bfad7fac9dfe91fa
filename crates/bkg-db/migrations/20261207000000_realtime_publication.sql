-- The publication realtime clients receive table changes through, as they expect it to exist.
-- It starts empty: `ALTER PUBLICATION supabase_realtime ADD TABLE <table>` makes a table's
-- committed changes go out (to subscribers allowed to SELECT each row).
CREATE PUBLICATION supabase_realtime;

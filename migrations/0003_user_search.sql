CREATE INDEX "users_username_pattern_idx" ON "users" USING btree (lower("username") text_pattern_ops);--> statement-breakpoint
CREATE INDEX "users_email_pattern_idx" ON "users" USING btree (lower("email") text_pattern_ops);--> statement-breakpoint
-- A user deleted by any means (SQL included) has their open sessions announced as ended before the cascade removes
-- them, so that every instance refuses their access tokens at once (the channel of services/session-sync.ts).
CREATE FUNCTION "auth_announce_deleted_user_sessions"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	batch text;
BEGIN
	FOR batch IN
		SELECT string_agg("id"::text, ',') FROM (
			SELECT "id", (row_number() OVER ()) / 200 AS "grp" FROM "sessions" WHERE "user_id" = OLD."id" AND "ended_at" IS NULL
		) AS "open" GROUP BY "grp"
	LOOP
		PERFORM pg_notify('auth_session_ended', batch);
	END LOOP;
	RETURN OLD;
END;
$$;--> statement-breakpoint
CREATE TRIGGER "users_announce_deleted_sessions" BEFORE DELETE ON "users"
	FOR EACH ROW EXECUTE FUNCTION "auth_announce_deleted_user_sessions"();

CREATE TABLE "service_clients" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"scopes" text[] DEFAULT '{}'::text[] NOT NULL,
	"secret_hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"secret_rotated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"deleted_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "service_clients_deleted_at_idx" ON "service_clients" USING btree ("deleted_at");--> statement-breakpoint
UPDATE "roles" SET "scopes" = ARRAY(SELECT DISTINCT s FROM unnest("scopes" || '{clients:read,clients:write}'::text[]) AS s ORDER BY s)
	WHERE "name" = 'admin' AND "built_in";

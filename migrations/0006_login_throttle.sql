CREATE TABLE "login_throttle" (
	"key_hash" text PRIMARY KEY NOT NULL,
	"failures" integer NOT NULL,
	"locked_until" timestamp with time zone,
	"forget_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "login_trusted_addresses" (
	"key_hash" text NOT NULL,
	"ip" text NOT NULL,
	"succeeded_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "login_trusted_addresses_key_hash_ip_pk" PRIMARY KEY("key_hash","ip")
);
--> statement-breakpoint
CREATE INDEX "login_throttle_forget_at_idx" ON "login_throttle" USING btree ("forget_at");--> statement-breakpoint
CREATE INDEX "login_trusted_addresses_succeeded_at_idx" ON "login_trusted_addresses" USING btree ("succeeded_at");
ALTER TABLE "refresh_tokens" ADD COLUMN "rotated_by_ip" text;--> statement-breakpoint
ALTER TABLE "refresh_tokens" ADD COLUMN "rotated_by_agent" text;
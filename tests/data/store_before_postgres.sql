-- A database written by asyncpay before the store learned PostgreSQL (schema 3; components mailbox 1,
-- hold 3, payer 2, recipient 2): sqlite3 .dump of a node's store with one row of each kind.
BEGIN TRANSACTION;
CREATE TABLE "component_versions" (
   "name" TEXT PRIMARY KEY,
   "version" INTEGER
);
INSERT INTO "component_versions" VALUES('mailbox',1);
INSERT INTO "component_versions" VALUES('hold',3);
INSERT INTO "component_versions" VALUES('payer',2);
INSERT INTO "component_versions" VALUES('recipient',2);
CREATE TABLE "counters" (
   "name" TEXT PRIMARY KEY,
   "value" INTEGER
);
INSERT INTO "counters" VALUES('mailbox_buffered',2);
CREATE TABLE "held_htlcs" (
   "key" TEXT PRIMARY KEY,
   "payment_hash" BLOB,
   "amount_msat" INTEGER,
   "cltv_expiry" INTEGER,
   "outgoing_cltv" INTEGER,
   "peer_id" TEXT,
   "payload" BLOB,
   "state" TEXT,
   "reason" TEXT,
   "since" INTEGER,
   "updated_at" INTEGER
, "deadline" INTEGER NOT NULL DEFAULT 0, "request" BLOB, "sends" INTEGER NOT NULL DEFAULT 0, "next_send_at" INTEGER NOT NULL DEFAULT 0);
INSERT INTO "held_htlcs" VALUES('1x2x3/7',X'0404040404040404040404040404040404040404040404040404040404040404',2100000000000000000,800100,800050,'02dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd',X'7061796C6F6164','held',NULL,1700000003,0,1700086403,NULL,0,0);
CREATE TABLE "invoices" (
   "recipient_id" TEXT,
   "invoice_slot" INTEGER,
   "invoice" BLOB,
   "forward_path" BLOB,
   "offer_id" BLOB,
   "created_at" INTEGER,
   "expires_at" INTEGER,
   "updated_at" INTEGER,
   "served" INTEGER DEFAULT 0,
   PRIMARY KEY ("recipient_id", "invoice_slot")
);
INSERT INTO "invoices" VALUES('02aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',0,X'7374617469632D696E766F696365',X'666F7277617264',X'0303030303030303030303030303030303030303030303030303030303030303',1700000000,1800000000,1700000000,0);
CREATE TABLE "issued_offer_paths" (
   "path" BLOB PRIMARY KEY,
   "recipient_id" TEXT,
   "invoice_slot" INTEGER,
   "expires_at" INTEGER
, "offer_path_id" BLOB, "serve_path_id" BLOB);
INSERT INTO "issued_offer_paths" VALUES(X'706174682D31','02aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',0,1800000000,X'0101010101010101010101010101010101010101010101010101010101010101',X'0202020202020202020202020202020202020202020202020202020202020202');
CREATE TABLE "mailbox" (
   "id" INTEGER PRIMARY KEY,
   "peer_id" TEXT,
   "source" TEXT,
   "path_key" BLOB,
   "onion" BLOB,
   "digest" BLOB,
   "size" INTEGER,
   "received_at" INTEGER,
   "attempts" INTEGER DEFAULT 0,
   "last_attempt_at" INTEGER
);
INSERT INTO "mailbox" VALUES(1,'02bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',NULL,X'020202020202020202020202020202020202020202020202020202020202020202',X'6F6E696F6E2D31',X'B28A5047BC4A3225B3C7650A850319D70604F2AF93D50CF52C6EDE4660B6485E',7,1700000001,0,NULL);
INSERT INTO "mailbox" VALUES(2,'02bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb','02cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc',X'020202020202020202020202020202020202020202020202020202020202020202',X'6F6E696F6E2D32',X'EED51F8115C9E108711B90BDBA55A26C19E347D0653B67B7AC88631AEF282CF8',7,1700000002,0,NULL);
CREATE TABLE "path_contexts" (
   "path_id" BLOB PRIMARY KEY,
   "kind" TEXT,
   "recipient_id" TEXT,
   "invoice_slot" INTEGER,
   "expires_at" INTEGER,
   "created_at" INTEGER
);
INSERT INTO "path_contexts" VALUES(X'0101010101010101010101010101010101010101010101010101010101010101','lsp:serve','02aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',0,1800000000,1700000000);
CREATE TABLE "payer_payments" (
   "id" TEXT PRIMARY KEY,
   "state" TEXT,
   "kind" TEXT,
   "bolt12" TEXT,
   "offer" BLOB,
   "amount_msat" INTEGER,
   "nonce" BLOB,
   "invreq" BLOB,
   "invoice" BLOB,
   "payment_hash" BLOB,
   "payment_preimage" BLOB,
   "reason" TEXT,
   "attempts" INTEGER,
   "next_at" INTEGER,
   "expires_at" INTEGER,
   "created_at" INTEGER,
   "updated_at" INTEGER
, "held_sends" INTEGER NOT NULL DEFAULT 0);
INSERT INTO "payer_payments" VALUES('pay-1','complete','static','lno1x',X'6F66666572',5000,X'6E6F6E6365',X'696E76726571',NULL,X'0505050505050505050505050505050505050505050505050505050505050505',X'0606060606060606060606060606060606060606060606060606060606060606',NULL,0,0,0,1700000004,0,0);
CREATE TABLE "recipient_claims" (
   "payment_hash" BLOB PRIMARY KEY,
   "path_id" BLOB,
   "slot" INTEGER,
   "kind" TEXT,
   "offer_id" BLOB,
   "preimage" BLOB,
   "total_msat" INTEGER,
   "deadline" INTEGER,
   "created_at" INTEGER
);
CREATE TABLE "recipient_issued_offers" (
   "offer_id" BLOB PRIMARY KEY,
   "slot" INTEGER,
   "offer" BLOB,
   "bolt12" TEXT,
   "nonce" BLOB,
   "expires_at" INTEGER,
   "created_at" INTEGER
);
INSERT INTO "recipient_issued_offers" VALUES(X'2EF84FAFF253DE920C381A3CFB5C486CC83E493D3C8AC0E85C18652FADE93786',0,X'6F666665722D30','lno1y',X'6E6F6E6365',1700086405,1700000005);
CREATE TABLE "recipient_offers" (
   "slot" INTEGER PRIMARY KEY,
   "state" TEXT,
   "description" TEXT,
   "amount_msat" INTEGER,
   "nonce" BLOB,
   "offer" BLOB,
   "bolt12" TEXT,
   "paths_expires_at" INTEGER,
   "serve_path" BLOB,
   "invoice" BLOB,
   "invoice_expires_at" INTEGER,
   "channel" TEXT,
   "persisted_at" INTEGER,
   "created_at" INTEGER,
   "updated_at" INTEGER
);
INSERT INTO "recipient_offers" VALUES(0,'ready','coffee',NULL,X'6E6F6E6365',X'6F666665722D30','lno1y',NULL,NULL,NULL,NULL,NULL,NULL,1700000005,0);
CREATE TABLE "recipient_parts" (
   "scid" TEXT,
   "htlc_id" INTEGER,
   "payment_hash" BLOB,
   "amount_msat" INTEGER,
   "cltv_expiry" INTEGER,
   "created_at" INTEGER,
   PRIMARY KEY ("scid", "htlc_id")
);
CREATE TABLE "recipient_payments" (
   "payment_hash" BLOB PRIMARY KEY,
   "payment_preimage" BLOB,
   "amount_msat" INTEGER,
   "slot" INTEGER,
   "kind" TEXT,
   "status" TEXT,
   "received_at" INTEGER,
   "created_at" INTEGER
, "path_id" BLOB, "offer_id" BLOB);
INSERT INTO "recipient_payments" VALUES(X'0707070707070707070707070707070707070707070707070707070707070707',X'0808080808080808080808080808080808080808080808080808080808080808',5000,0,'static','received',1700000006,1700000006,NULL,NULL);
CREATE TABLE "recipient_server" (
   "id" INTEGER PRIMARY KEY,
   "paths" BLOB,
   "set_at" INTEGER
);
INSERT INTO "recipient_server" VALUES(1,X'7061746873',1700000005);
CREATE TABLE "recipients" (
   "recipient_id" TEXT PRIMARY KEY,
   "created_at" INTEGER,
   "last_request_at" INTEGER
);
INSERT INTO "recipients" VALUES('02aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',1700000000,1700000000);
CREATE TABLE "schema_version" (
   "id" INTEGER PRIMARY KEY,
   "version" INTEGER
);
INSERT INTO "schema_version" VALUES(1,3);
CREATE INDEX "idx_path_contexts_recipient_id"
    ON "path_contexts" ("recipient_id");
CREATE INDEX "idx_mailbox_peer_id_id"
    ON "mailbox" ("peer_id", "id");
CREATE UNIQUE INDEX "idx_mailbox_digest"
    ON "mailbox" ("digest");
CREATE INDEX "idx_mailbox_received_at"
    ON "mailbox" ("received_at");
CREATE INDEX "idx_issued_offer_paths_recipient_id_invoice_slot"
    ON "issued_offer_paths" ("recipient_id", "invoice_slot");
CREATE INDEX "idx_mailbox_source_id"
    ON "mailbox" ("source", "id");
CREATE INDEX "idx_held_htlcs_state"
    ON "held_htlcs" ("state");
CREATE INDEX "idx_held_htlcs_payment_hash"
    ON "held_htlcs" ("payment_hash");
CREATE INDEX "idx_held_htlcs_state_peer_id"
    ON "held_htlcs" ("state", "peer_id");
CREATE INDEX "idx_payer_payments_state"
    ON "payer_payments" ("state");
CREATE INDEX "idx_recipient_parts_payment_hash"
    ON "recipient_parts" ("payment_hash");
CREATE INDEX "idx_recipient_issued_offers_slot"
    ON "recipient_issued_offers" ("slot");
COMMIT;

-- dovecot-migrate: the table doveadm migrate accounts writes (SQL store)
-- and Dovecot's sql passdb and userdb read, through the queries of
-- dovecot-migrate-accounts-sql.conf.ext.  PostgreSQL:
--
--   psql -U postgres -c "CREATE USER dovecot PASSWORD '...'"
--   psql -U postgres -c "CREATE DATABASE mail OWNER dovecot"
--   psql -U dovecot -d mail -f dovecot-migrate-accounts.sql

CREATE TABLE IF NOT EXISTS migrate_accounts (
  -- user@domain, lowercase
  username varchar(320) PRIMARY KEY,
  domain varchar(255) NOT NULL,
  -- {SCHEME}hash (ARGON2ID by default); never the password itself
  password varchar(255) NOT NULL,
  -- the template's GB in whole MiB (2.5 GB = 2560)
  quota_mib bigint NOT NULL CHECK (quota_mib > 0),
  -- 0 = basic, 1 = sync
  account_type smallint NOT NULL CHECK (account_type IN (0, 1)),
  full_name varchar(255) NOT NULL,
  language varchar(35) NOT NULL,
  time_zone varchar(64) NOT NULL,
  date_format varchar(32) NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS migrate_accounts_domain ON migrate_accounts (domain);

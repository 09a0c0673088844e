/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "migrate-source.h"
#include "migrate-plugin.h"

/* The engine lives in this module for doveadm migrate, the only process
   that loads it (conf.d/90-migrate.conf: protocol doveadm); nothing
   happens when a user is created: the settings are read when a verb asks
   for them. */

const char *migrate_plugin_version = DOVECOT_ABI_VERSION;

void migrate_plugin_init(struct module *module ATTR_UNUSED)
{
}

void migrate_plugin_deinit(void)
{
	migrate_source_token_cache_free();
}

/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "net.h"
#include "migrate-tls.h"

#include <ctype.h>

#define MIGRATE_TLS_NAME_MAX_LEN 253
#define MIGRATE_TLS_LABEL_MAX_LEN 63
#define MIGRATE_TLS_SHA256_LEN 32

bool migrate_tls_host_is_ip(const char *host)
{
	struct ip_addr ip;

	return net_addr2ip(host, &ip) == 0;
}

bool migrate_tls_name_valid(const char *name)
{
	const char *p;
	size_t label = 0;

	if (name[0] == '\0' || strlen(name) > MIGRATE_TLS_NAME_MAX_LEN ||
	    migrate_tls_host_is_ip(name))
		return FALSE;
	for (p = name; *p != '\0'; p++) {
		if (*p == '.') {
			/* no empty label, none that ends with '-' */
			if (label == 0 || p[-1] == '-')
				return FALSE;
			label = 0;
		} else if (i_isalnum(*p) || (*p == '-' && label > 0)) {
			if (++label > MIGRATE_TLS_LABEL_MAX_LEN)
				return FALSE;
		} else {
			return FALSE;
		}
	}
	return label > 0 && p[-1] != '-';
}

const char *migrate_tls_name_choose(const char *host, const char *row_name,
				    const char *domain_name,
				    const char *set_host, const char *set_name)
{
	if (host == NULL || !migrate_tls_host_is_ip(host))
		return NULL;
	if (row_name != NULL && row_name[0] != '\0')
		return row_name;
	if (domain_name != NULL && domain_name[0] != '\0')
		return domain_name;
	/* the configured name belongs to the configured host */
	if (set_name != NULL && null_strcasecmp(host, set_host) == 0)
		return set_name;
	return NULL;
}

const char *migrate_tls_fingerprint_normalize(const char *fingerprint)
{
	string_t *str = t_str_new(MIGRATE_TLS_SHA256_LEN * 3);
	unsigned int digits = 0;
	const char *p;

	for (p = fingerprint; *p != '\0'; p++) {
		/* a ':' only between two pairs */
		if (*p == ':' && digits % 2 == 0 && digits > 0 &&
		    p[-1] != ':' && p[1] != '\0')
			continue;
		if (!i_isxdigit(*p))
			return NULL;
		if (digits > 0 && digits % 2 == 0)
			str_append_c(str, ':');
		str_append_c(str, i_toupper(*p));
		digits++;
	}
	return digits == MIGRATE_TLS_SHA256_LEN * 2 ? str_c(str) : NULL;
}

const char *migrate_tls_source_key(const char *host, unsigned int port)
{
	const char *lhost = t_str_lcase(host);

	if (strchr(lhost, ':') != NULL)
		return t_strdup_printf("[%s]:%u", lhost, port);
	return t_strdup_printf("%s:%u", lhost, port);
}

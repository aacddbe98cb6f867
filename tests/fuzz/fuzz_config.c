/*  fuzz_config: config files (engine/config.c zcq_config_load, ZPL parsed
    by czmq's zconfig) and setting values (zcq_config_set).

    For every input:
    1.  The bytes are a config file: loaded into a fresh config. A load
        that fails leaves a reason; every setting then still formats.
    2.  The bytes are split at the first NUL into a setting name and a
        value (NUL-terminated copies) for zcq_config_set.
*/
#include "fuzz_common.h"
#include "zcq_internal.h"
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int s_fd = -1;
static char s_path[64];

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    zsys_handler_set (NULL);
    zsys_set_logstream (NULL);
    zsys_set_logsystem (false);
    s_fd = memfd_create ("zcq-fuzz-config", 0);
    if (s_fd < 0) {
        perror ("memfd_create");
        exit (1);
    }
    snprintf (s_path, sizeof s_path, "/proc/self/fd/%d", s_fd);
    return 0;
}

static void
s_format_all (zcq_config_t *config)
{
    for (const char *const *name = zcq_config_names (); *name; name++) {
        const char *value = zcq_config_get (config, *name);
        FUZZ_ASSERT (value != NULL, "setting %s does not format", *name);
        FUZZ_ASSERT (strlen (value) < 4096, "setting %s is too long", *name);
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    //  1. as a file
    FUZZ_ASSERT (ftruncate (s_fd, 0) == 0 && pwrite (s_fd, data, size, 0) == (ssize_t) size,
                 "cannot write the memfd");
    zcq_config_t *config = zcq_config_new ();
    char error[256] = "";
    zcq_err_t err = zcq_config_load (config, s_path, error, sizeof error);
    if (err != ZCQ_OK)
        FUZZ_ASSERT (error[0], "a failed load without a reason");
    s_format_all (config);

    //  2. as name NUL value
    const uint8_t *nul = memchr (data, 0, size);
    size_t name_len = nul ? (size_t) (nul - data) : size;
    char *name = strndup ((const char *) data, name_len);
    char *value = nul ? strndup ((const char *) nul + 1, size - name_len - 1) : NULL;
    error[0] = 0;
    err = zcq_config_set (config, name, value, error, sizeof error);
    if (err != ZCQ_OK)
        FUZZ_ASSERT (error[0], "a failed set without a reason");
    else
        FUZZ_ASSERT (value != NULL, "a setting without a value was accepted");
    s_format_all (config);
    free (name);
    free (value);
    zcq_config_destroy (&config);
    return 0;
}

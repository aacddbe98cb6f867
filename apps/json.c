/*  json.c: JSON <-> MessagePack for the command-line tools.

    Printed JSON goes to terminals: jansson escapes C0 control characters,
    and zcq_json_print escapes DEL and the C1 controls (U+0080..U+009F)
    too, so that no string can drive the terminal.
*/
#include "json.h"
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void
s_encode (const json_t *json, zcq_writer_t *writer)
{
    switch (json_typeof (json)) {
        case JSON_OBJECT: {
            zcq_writer_map (writer, json_object_size (json));
            const char *key;
            json_t *value;
            json_object_foreach ((json_t *) json, key, value) {
                zcq_writer_str (writer, key);
                s_encode (value, writer);
            }
            break;
        }
        case JSON_ARRAY: {
            zcq_writer_array (writer, json_array_size (json));
            size_t index;
            json_t *value;
            json_array_foreach (json, index, value)
                s_encode (value, writer);
            break;
        }
        case JSON_STRING:
            zcq_writer_strn (writer, json_string_value (json), json_string_length (json));
            break;
        case JSON_INTEGER: zcq_writer_int (writer, json_integer_value (json)); break;
        case JSON_REAL: zcq_writer_float (writer, json_real_value (json)); break;
        case JSON_TRUE: zcq_writer_bool (writer, true); break;
        case JSON_FALSE: zcq_writer_bool (writer, false); break;
        default: zcq_writer_nil (writer); break;
    }
}

bool
zcq_json_encode (const char *text, zcq_writer_t *writer, char *error, size_t size)
{
    json_error_t reason;
    json_t *json = json_loads (text, JSON_DECODE_ANY, &reason);
    if (!json) {
        snprintf (error, size, "not JSON: %s", reason.text);
        return false;
    }
    s_encode (json, writer);
    json_decref (json);
    return zcq_writer_ok (writer);
}

//  `name=value`, `name:=JSON`: the name's length, and where the value
//  starts; *raw when the value is JSON.
static size_t
s_pair_split (const char *word, const char **value, bool *raw)
{
    const char *equals = strchr (word, '=');
    if (!equals) {
        *value = NULL;
        return 0;
    }
    *raw = equals > word && equals[-1] == ':';
    *value = equals + 1;
    return (size_t) (equals - word) - (*raw ? 1 : 0);
}

bool
zcq_json_encode_pairs (char *const *words, int count, zcq_writer_t *writer, char *error,
                       size_t size)
{
    zcq_writer_map (writer, (size_t) count);
    for (int index = 0; index < count; index++) {
        const char *value;
        bool raw = false;
        size_t name_len = s_pair_split (words[index], &value, &raw);
        if (!value || name_len == 0) {
            snprintf (error, size, "'%s' is not name=value (or name:=JSON)", words[index]);
            return false;
        }
        //  a repeated name would be a map that repeats a key: the node
        //  refuses it, so say which here
        for (int before = 0; before < index; before++) {
            const char *other;
            bool other_raw;
            size_t other_len = s_pair_split (words[before], &other, &other_raw);
            if (other_len == name_len && memcmp (words[before], words[index], name_len) == 0) {
                snprintf (error, size, "'%.*s' is given twice", (int) name_len, words[index]);
                return false;
            }
        }
        zcq_writer_strn (writer, words[index], name_len);
        if (raw) {
            char reason[200];
            if (!zcq_json_encode (value, writer, reason, sizeof reason)) {
                snprintf (error, size, "%.*s:= takes JSON (%s); a string is \"...\" in JSON",
                          (int) name_len, words[index], reason);
                return false;
            }
            continue;
        }
        char *end;
        errno = 0;
        long long number = strtoll (value, &end, 10);
        if (*value && !*end && !errno)
            zcq_writer_int (writer, number);
        else if (strcmp (value, "true") == 0 || strcmp (value, "false") == 0)
            zcq_writer_bool (writer, value[0] == 't');
        else if (strcmp (value, "null") == 0)
            zcq_writer_nil (writer);
        else
            zcq_writer_str (writer, value);
    }
    return zcq_writer_ok (writer);
}

//  A string member of a command line, or NULL when absent; false with a
//  reason when present and not a non-empty string.
static bool
s_member_str (json_t *object, const char *name, char **text, char *error, size_t size)
{
    json_t *member = json_object_get (object, name);
    *text = NULL;
    if (!member)
        return true;
    if (!json_is_string (member) || json_string_length (member) == 0) {
        snprintf (error, size, "\"%s\" must be a non-empty string", name);
        return false;
    }
    *text = strndup (json_string_value (member), json_string_length (member));
    return *text != NULL;
}

bool
zcq_json_command_parse (const char *text, zcq_json_command_t *command, char *error, size_t size)
{
    static const char *known[]
        = { "aggregate", "key", "stream", "type", "data", "id", "expect", "meta" };
    *command = (zcq_json_command_t) { .expect = -1 };
    json_error_t reason;
    json_t *json = json_loads (text, 0, &reason);
    if (!json) {
        snprintf (error, size, "not JSON: %s", reason.text);
        return false;
    }
    bool ok = json_is_object (json);
    if (!ok)
        snprintf (error, size, "not a JSON object");
    const char *name;
    json_t *member;
    json_object_foreach (ok ? json : NULL, name, member) {
        bool found = false;
        for (size_t index = 0; index < sizeof known / sizeof known[0]; index++)
            found = found || strcmp (name, known[index]) == 0;
        if (!found) {
            snprintf (error, size,
                      "unknown field \"%s\" (fields: aggregate, key or stream, type, "
                      "data, id, expect, meta)",
                      name);
            ok = false;
            break;
        }
    }
    char *stream = NULL;
    ok = ok && s_member_str (json, "aggregate", &command->aggregate, error, size)
      && s_member_str (json, "key", &command->key, error, size)
      && s_member_str (json, "stream", &stream, error, size)
      && s_member_str (json, "type", &command->type, error, size)
      && s_member_str (json, "id", &command->id, error, size);
    if (ok && command->id && strlen (command->id) > 64) {
        snprintf (error, size, "\"id\" is at most 64 bytes");
        ok = false;
    }
    if (ok && stream && (command->aggregate || command->key)) {
        snprintf (error, size, "give \"stream\" or \"aggregate\" and \"key\", not both");
        ok = false;
    }
    else if (ok && stream) {
        char *slash = strchr (stream, '/');
        if (!slash || slash == stream || !slash[1]) {
            snprintf (error, size, "\"stream\" must be AGGREGATE/KEY");
            ok = false;
        }
        else {
            command->aggregate = strndup (stream, (size_t) (slash - stream));
            command->key = strdup (slash + 1);
            ok = command->aggregate && command->key;
        }
    }
    if (ok && (!command->aggregate || !command->key)) {
        snprintf (error, size, "needs \"aggregate\" and \"key\" (or \"stream\")");
        ok = false;
    }
    if (ok && !command->type) {
        snprintf (error, size, "needs \"type\"");
        ok = false;
    }
    json_t *expect = ok ? json_object_get (json, "expect") : NULL;
    if (expect && !json_is_null (expect)) {
        if (!json_is_integer (expect) || json_integer_value (expect) < 0) {
            snprintf (error, size, "\"expect\" must be an integer >= 0 (or null)");
            ok = false;
        }
        else
            command->expect = json_integer_value (expect);
    }
    json_t *meta = ok ? json_object_get (json, "meta") : NULL;
    if (meta && !json_is_null (meta)) {
        if (!json_is_object (meta)) {
            snprintf (error, size, "\"meta\" must be an object (or null)");
            ok = false;
        }
        else if ((command->meta = zcq_writer_new ()))
            s_encode (meta, command->meta);
    }
    json_t *data = ok ? json_object_get (json, "data") : NULL;
    if (data && (command->data = zcq_writer_new ()))
        s_encode (data, command->data);
    if (ok
        && ((meta && !json_is_null (meta) && !zcq_writer_ok (command->meta))
            || (data && !zcq_writer_ok (command->data)))) {
        snprintf (error, size, "out of memory");
        ok = false;
    }
    free (stream);
    json_decref (json);
    if (!ok)
        zcq_json_command_clear (command);
    return ok;
}

void
zcq_json_command_clear (zcq_json_command_t *command)
{
    free (command->id);
    free (command->aggregate);
    free (command->key);
    free (command->type);
    zcq_writer_destroy (&command->data);
    zcq_writer_destroy (&command->meta);
    *command = (zcq_json_command_t) { .expect = -1 };
}

static json_t *
s_decode (const zcq_value_t *value)
{
    switch (zcq_value_type (value)) {
        case ZCQ_TYPE_BOOL: {
            bool flag = false;
            zcq_value_bool (value, &flag);
            return json_boolean (flag);
        }
        case ZCQ_TYPE_INT: {
            int64_t number;
            uint64_t unsigned_number;
            if (zcq_value_int (value, &number))
                return json_integer (number);
            zcq_value_uint (value, &unsigned_number);
            return json_real ((double) unsigned_number);
        }
        case ZCQ_TYPE_FLOAT: {
            double number = 0;
            zcq_value_float (value, &number);
            return json_real (number);
        }
        case ZCQ_TYPE_STR: {
            const char *text;
            size_t len;
            zcq_value_str (value, &text, &len);
            json_t *json = json_stringn_nocheck (text, len);
            return json ? json : json_string ("");
        }
        case ZCQ_TYPE_BIN: {
            const void *data;
            size_t len;
            zcq_value_bin (value, &data, &len);
            char *hex = malloc (len * 2 + 1);
            for (size_t index = 0; hex && index < len; index++)
                sprintf (hex + index * 2, "%02x", ((const uint8_t *) data)[index]);
            json_t *json = json_string (hex ? (len ? hex : "") : "");
            free (hex);
            return json;
        }
        case ZCQ_TYPE_ARRAY: {
            json_t *array = json_array ();
            for (size_t index = 0; index < zcq_value_size (value); index++)
                json_array_append_new (array, s_decode (zcq_value_at (value, index)));
            return array;
        }
        case ZCQ_TYPE_MAP: {
            json_t *object = json_object ();
            for (size_t index = 0; index < zcq_value_size (value); index++) {
                const zcq_value_t *key = zcq_value_key_at (value, index);
                char *name = NULL;
                const char *text;
                size_t len;
                if (zcq_value_str (key, &text, &len))
                    name = strndup (text, len);
                else
                    name = zcq_json_text (key);
                if (name)
                    json_object_set_new_nocheck (object, name,
                                                 s_decode (zcq_value_val_at (value, index)));
                free (name);
            }
            return object;
        }
        default: return json_null ();
    }
}

//  Print JSON text, escaping DEL and the C1 controls, then a newline.
static void
s_print_json (FILE *out, json_t *json, bool pretty)
{
    char *text = json_dumps (json, JSON_ENCODE_ANY | (pretty ? JSON_INDENT (2) : JSON_COMPACT)
                                       | JSON_PRESERVE_ORDER);
    //  DEL and C1 controls occur only inside strings: escape them there
    for (const unsigned char *at = (const unsigned char *) text; at && *at; at++) {
        if (*at == 0x7f)
            fputs ("\\u007f", out);
        else if (at[0] == 0xc2 && at[1] >= 0x80 && at[1] <= 0x9f) {
            fprintf (out, "\\u%04x", at[1]);
            at++;
        }
        else
            fputc (*at, out);
    }
    fputc ('\n', out);
    free (text);
}

void
zcq_json_print (FILE *out, const zcq_value_t *value, bool pretty)
{
    json_t *json = s_decode (value);
    s_print_json (out, json, pretty);
    json_decref (json);
}

void
zcq_json_print_numbered (FILE *out, const zcq_value_t *value, const char *name, long long number)
{
    json_t *decoded = s_decode (value);
    json_t *json = json_object ();
    json_object_set_new (json, name, json_integer (number));
    if (json_is_object (decoded))
        json_object_update (json, decoded);
    else
        json_object_set (json, "reply", decoded);
    json_decref (decoded);
    s_print_json (out, json, false);
    json_decref (json);
}

char *
zcq_json_text (const zcq_value_t *value)
{
    json_t *json = s_decode (value);
    char *text = json_dumps (json, JSON_ENCODE_ANY | JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref (json);
    return text;
}

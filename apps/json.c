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

bool
zcq_json_encode_pairs (char *const *words, int count, zcq_writer_t *writer, char *error,
                       size_t size)
{
    zcq_writer_map (writer, (size_t) count);
    for (int index = 0; index < count; index++) {
        const char *equals = strchr (words[index], '=');
        if (!equals || equals == words[index]) {
            snprintf (error, size, "'%s' is not name=value", words[index]);
            return false;
        }
        zcq_writer_strn (writer, words[index], (size_t) (equals - words[index]));
        const char *value = equals + 1;
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

void
zcq_json_print (FILE *out, const zcq_value_t *value, bool pretty)
{
    json_t *json = s_decode (value);
    char *text = json_dumps (json, JSON_ENCODE_ANY | (pretty ? JSON_INDENT (2) : JSON_COMPACT)
                                       | JSON_PRESERVE_ORDER);
    json_decref (json);
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

char *
zcq_json_text (const zcq_value_t *value)
{
    json_t *json = s_decode (value);
    char *text = json_dumps (json, JSON_ENCODE_ANY | JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref (json);
    return text;
}

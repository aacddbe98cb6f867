/*  json.h: JSON in and out for the command-line tools (jansson). */
#ifndef ZCQ_APPS_JSON_H_INCLUDED
#define ZCQ_APPS_JSON_H_INCLUDED

#include <stdio.h>
#include <zcqrs.h>

//  Encode JSON text as one MessagePack value into writer; false with a
//  reason in error when the text is not JSON.
bool zcq_json_encode (const char *text, zcq_writer_t *writer, char *error, size_t size);
//  Encode `name=value name=value ...` words as a MessagePack map: values
//  that read as integers, true, false or null become those, others strings.
bool zcq_json_encode_pairs (char *const *words, int count, zcq_writer_t *writer, char *error,
                            size_t size);
//  Print a value as JSON (indented when pretty), then a newline.
void zcq_json_print (FILE *out, const zcq_value_t *value, bool pretty);
//  A value as a JSON string (compact); caller frees.
char *zcq_json_text (const zcq_value_t *value);

#endif

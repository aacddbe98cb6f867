/*  json.h: JSON in and out for the command-line tools (jansson). */
#ifndef ZCQ_APPS_JSON_H_INCLUDED
#define ZCQ_APPS_JSON_H_INCLUDED

#include <stdio.h>
#include <zcqrs.h>

//  Encode JSON text as one MessagePack value into writer; false with a
//  reason in error when the text is not JSON.
bool zcq_json_encode (const char *text, zcq_writer_t *writer, char *error, size_t size);
//  Encode `name=value name:=JSON ...` words as a MessagePack map. After
//  `=`, a value that reads as a whole integer, true, false or null becomes
//  that, any other a string; after `:=` the value is JSON (`code:='"42"'`
//  is the string "42"). A name given twice is refused.
bool zcq_json_encode_pairs (char *const *words, int count, zcq_writer_t *writer, char *error,
                            size_t size);
//  Print a value as JSON (indented when pretty), then a newline.
void zcq_json_print (FILE *out, const zcq_value_t *value, bool pretty);
//  Print a map as one line of JSON with `name: number` first (a result
//  line of `send -`: the input line it answers).
void zcq_json_print_numbered (FILE *out, const zcq_value_t *value, const char *name,
                              long long number);

//  A command given as one line of JSON (`zcqrs send -`), with the field
//  names of the wire request: aggregate and key (or stream "AGG/KEY"),
//  type, optional data, id, expect, meta. Strings are owned.
typedef struct {
    char *id; //  NULL when not given
    char *aggregate;
    char *key;
    char *type;
    int64_t expect;     //  -1 when not given
    zcq_writer_t *data; //  encoded value, NULL when not given
    zcq_writer_t *meta; //  encoded map, NULL when not given
} zcq_json_command_t;

//  Parse one line; false with a reason in error (unknown fields included).
bool zcq_json_command_parse (const char *text, zcq_json_command_t *command, char *error,
                             size_t size);
//  Free what a parse gave and reset the command.
void zcq_json_command_clear (zcq_json_command_t *command);
//  A value as a JSON string (compact); caller frees.
char *zcq_json_text (const zcq_value_t *value);

#endif

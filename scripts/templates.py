"""Chat templates written by the Refinery team in the formats of well-known model families.

These are the texts of Refinery's built-in templates (Sources/RefineryText/BuiltinTemplates.swift
holds the same strings; a Swift test checks they agree) plus a few test-only templates that
exercise more of the Jinja language.
"""

CHATML = """{%- for message in messages %}
    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

LLAMA3 = """{{- bos_token }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

MISTRAL = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- '[INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- '[INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token }}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, after an optional system message.') }}
    {%- endif %}
{%- endfor %}
"""

PHI3 = """{%- for message in messages %}
    {%- if message['role'] == 'system' and message['content'] %}
        {{- '<|system|>\\n' + message['content'] + '<|end|>\\n' }}
    {%- elif message['role'] == 'user' %}
        {{- '<|user|>\\n' + message['content'] + '<|end|>\\n' }}
    {%- elif message['role'] == 'assistant' %}
        {{- '<|assistant|>\\n' + message['content'] + '<|end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|assistant|>\\n' }}
{%- else %}
    {{- eos_token }}
{%- endif %}
"""

GEMMA = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set first_user_prefix = messages[0]['content'] | trim + '\\n\\n' %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set first_user_prefix = '' %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'assistant' %}
        {%- set role = 'model' %}
    {%- else %}
        {%- set role = message['role'] %}
    {%- endif %}
    {{- '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<start_of_turn>model\\n' }}
{%- endif %}
"""

ALPACA = """{%- set ns = namespace(system='Below is an instruction that describes a task. Write a response that appropriately completes the request.') %}
{%- for message in messages %}
    {%- if message.role == 'system' %}{% set ns.system = message.content | trim %}{% endif %}
{%- endfor %}
{{- bos_token + ns.system + '\\n\\n' }}
{%- for message in messages if message.role != 'system' %}
    {%- if message.role == 'user' %}
        {{- '### Instruction:\\n' + message.content | trim + '\\n\\n' }}
    {%- elif message.role == 'assistant' %}
        {{- '### Response:\\n' + message.content | trim + eos_token + '\\n\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '### Response:\\n' }}
{%- endif %}
"""

BUILTIN = {
    "chatml": CHATML,
    "llama3": LLAMA3,
    "mistral": MISTRAL,
    "phi3": PHI3,
    "gemma": GEMMA,
    "alpaca": ALPACA,
}

# Test-only templates.

# Zephyr's style leans on trim_blocks / lstrip_blocks and newlines after output tags.
ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

# Qwen2-style ChatML with a default system prompt.
QWEN_CHATML = """{%- for message in messages %}
    {%- if loop.first and messages[0]['role'] != 'system' %}
        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Exercises the rest of the language the engine supports.
KITCHEN_SINK = """{#- comments are dropped -#}
{%- set roles = ['system', 'user', 'assistant'] -%}
{%- set meta = {'count': messages | length, 'first': messages[0].role} -%}
count={{ meta.count }} first={{ meta['first'] | upper }} {{ 'yes' if meta.count > 2 else 'no' }}
{% for m in messages -%}
{{ loop.index }}/{{ loop.length }}{% if loop.first %} first{% endif %}{% if loop.last %} last{% endif %} {{ m.role | lower }}{% if m.role in roles %} known{% endif %}{% if m.role not in ['tool'] %} nontool{% endif %}: {{ m.content.strip() ~ '|' ~ loop.revindex }}
  head={{ m.content[:5] }} tail={{ m.content[-3:] }} every2={{ m.content[::2] | length }}
  {%- if m.content.startswith('Hi') %} greets{% elif m.content.endswith('?') %} asks{% else %} says{% endif %}
  {%- if m.name is defined %} name={{ m.name }}{% endif %}
  {%- if m.content is string %} str{% endif %}
{% endfor -%}
json={{ messages | tojson }}
first_json={{ messages[0] | tojson(indent=2) }}
tools={{ tools | default('none given') }} none={{ nothing is none }} defined={{ nothing is defined }} num={{ 3 is number }}
{{ messages[0].content | replace('a', 'A') }}|{{ messages | map(attribute='role') | join(', ') }}|{{ messages | selectattr('role', 'equalto', 'user') | list | length }}
{{ 'abc' | title }} {{ '  pad  ' | trim }}! {{ 7 // 2 }} {{ 7 % 3 }} {{ 2 ** 5 }} {{ 1.5 * 2 }} {{ -4 + 10 }} {{ 10 / 4 }}
{{ [1, 2, 3] | first }} {{ [1, 2, 3] | last }} {{ [3, 1, 2] | sort | join('') }} {{ 'a,b,c'.split(',') | reverse | join('-') }} {{ 'Hello'.upper() }} {{ 'x' * 3 }}
{{ true and not false }} {{ none }} {{ (1, 2) | length }} {{ {'k': 'v'}.items() | list | length }} {{ {'b': 1, 'a': 2} | dictsort | first | first }}
{%- for key, value in {'alpha': 1, 'beta': 2}.items() %} {{ key }}={{ value }}{% endfor %}
{%- for i in range(3) %}{% if i == 1 %}{% continue %}{% endif %} i{{ i }}{% endfor %}
{%- for i in range(10) %}{% if i == 2 %}{% break %}{% endif %} j{{ i }}{% endfor %}
{%- if add_generation_prompt %}
GEN{% endif %}"""

TEST_ONLY = {
    "zephyr": ZEPHYR,
    "qwen_chatml": QWEN_CHATML,
    "kitchen_sink": KITCHEN_SINK,
}

/// Refinery's built-in chat templates (`--template NAME`), written by the Refinery team in the
/// formats of well-known model families. `scripts/templates.py` holds the same texts; a test
/// checks they agree and that they render as transformers renders them.
public enum BuiltinTemplates {
    /// Template names accepted by `--template`.
    public static let names = ["chatml", "llama3", "mistral", "phi3", "gemma", "alpaca"]

    /// The template source for `name`, or nil.
    public static func source(named name: String) -> String? {
        switch name {
        case "chatml": return chatml
        case "llama3": return llama3
        case "mistral": return mistral
        case "phi3": return phi3
        case "gemma": return gemma
        case "alpaca": return alpaca
        default: return nil
        }
    }

    static let chatml = #"""
{%- for message in messages %}
    {{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}

"""#

    static let llama3 = #"""
{{- bos_token }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}

"""#

    static let mistral = #"""
{%- if messages[0]['role'] == 'system' %}
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
            {{- '[INST] ' + system_message + '\n\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- '[INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token }}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, after an optional system message.') }}
    {%- endif %}
{%- endfor %}

"""#

    static let phi3 = #"""
{%- for message in messages %}
    {%- if message['role'] == 'system' and message['content'] %}
        {{- '<|system|>\n' + message['content'] + '<|end|>\n' }}
    {%- elif message['role'] == 'user' %}
        {{- '<|user|>\n' + message['content'] + '<|end|>\n' }}
    {%- elif message['role'] == 'assistant' %}
        {{- '<|assistant|>\n' + message['content'] + '<|end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|assistant|>\n' }}
{%- else %}
    {{- eos_token }}
{%- endif %}

"""#

    static let gemma = #"""
{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set first_user_prefix = messages[0]['content'] | trim + '\n\n' %}
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
    {{- '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<start_of_turn>model\n' }}
{%- endif %}

"""#

    static let alpaca = #"""
{%- set ns = namespace(system='Below is an instruction that describes a task. Write a response that appropriately completes the request.') %}
{%- for message in messages %}
    {%- if message.role == 'system' %}{% set ns.system = message.content | trim %}{% endif %}
{%- endfor %}
{{- bos_token + ns.system + '\n\n' }}
{%- for message in messages if message.role != 'system' %}
    {%- if message.role == 'user' %}
        {{- '### Instruction:\n' + message.content | trim + '\n\n' }}
    {%- elif message.role == 'assistant' %}
        {{- '### Response:\n' + message.content | trim + eos_token + '\n\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '### Response:\n' }}
{%- endif %}

"""#

}

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("email", models.CharField(max_length=200)),
                ("confirmed", models.BooleanField(default=False)),
                ("shipped", models.BooleanField(default=False)),
                ("invoiced", models.BooleanField(default=False)),
            ],
        ),
    ]

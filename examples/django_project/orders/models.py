from django.db import models


class Order(models.Model):
    email = models.CharField(max_length=200)
    confirmed = models.BooleanField(default=False)
    shipped = models.BooleanField(default=False)
    invoiced = models.BooleanField(default=False)
